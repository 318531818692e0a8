"""The Tune callback as Tune handles it."""

import pickle
import threading

from allocator.trial.callback import TrialLog


def test_the_callback_pickles_whatever_printer_the_caller_gave():
    # Tune pickles its callbacks into tuner.pkl when the Tuner is built; a Python API caller's
    # printer (a logger's method, a closure over an Event) holds a lock, which cannot be pickled
    lock = threading.Lock()

    def printer(line: str) -> None:
        with lock:
            print(line)

    log = TrialLog(None, ["a"], lambda mixture: "", None, None, printer, lambda rec: 1)  # type: ignore[arg-type]
    assert pickle.loads(pickle.dumps(log)).__dict__ == {}
