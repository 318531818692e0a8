from allocator.data.suite import ABILITIES, build_suite


def test_same_seed_same_suite_other_seed_other_suite():
    a = build_suite(seed=3, pool_size=300, heldout_size=20)
    b = build_suite(seed=3, pool_size=300, heldout_size=20)
    c = build_suite(seed=4, pool_size=300, heldout_size=20)
    assert a == b
    assert a.train["copy"] != c.train["copy"]


def test_heldout_never_overlaps_training():
    s = build_suite(pool_size=2000, heldout_size=48)
    for ability in s.abilities:
        train = {e.instruction for e in s.train[ability]}
        held = {e.instruction for e in s.heldout[ability]}
        assert len(held) == 48, ability
        assert not train & held, ability
        assert len(train) == len(s.train[ability]), f"{ability}: duplicate training instructions"


def test_larger_pool_extends_smaller_one():
    # the pool's fixed order is what makes "the first n" nested across trials
    small = build_suite(pool_size=100, heldout_size=10)
    large = build_suite(pool_size=400, heldout_size=10)
    for ability in ABILITIES:
        assert large.train[ability][:100] == small.train[ability]
        assert large.heldout[ability] == small.heldout[ability]


def test_answers_are_right():
    s = build_suite(pool_size=200, heldout_size=10)
    for e in s.train["first"]:
        assert e.response == e.instruction.removeprefix("first letter of ")[0]
    for e in s.train["copy"]:
        assert e.response == e.instruction.removeprefix("repeat: ")
    for e in s.train["upper"]:
        assert e.response == e.instruction.removeprefix("uppercase: ").upper()
    for e in s.train["sort"]:
        assert e.response == "".join(sorted(e.instruction.removeprefix("sort: ")))
    for e in s.train["reverse"]:
        assert e.response == e.instruction.removeprefix("reverse: ")[::-1]
    for e in s.train["add"]:
        a, b = e.instruction.removeprefix("add ").split("+")
        assert int(e.response) == int(a) + int(b)
    for e in s.train["count"]:
        head, word = e.instruction.split(" in: ")
        assert int(e.response) == word.count(head.removeprefix("count "))


def test_every_ability_fills_its_pool_and_labels_examples():
    s = build_suite(pool_size=2000, heldout_size=48)
    assert s.sizes() == dict.fromkeys(ABILITIES, 2000)
    assert all(e.ability == a for a in s.abilities for e in s.train[a] + s.heldout[a])
