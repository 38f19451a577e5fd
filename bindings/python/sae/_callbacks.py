"""Python code called back from C (ctypes ``CFUNCTYPE``): its exceptions, and Ctrl-C.

An exception cannot cross the C frames between a ctypes callback and the ctypes call that led
to it: ctypes would print it, drop it and return 0. So each callback of the bindings catches
what it raises, records it in the :class:`CallbackGuard` of the C call that runs it, and asks C
to stop (a non-zero return, or an error status); the guard re-raises the exception once the C
call has returned.

Ctrl-C needs the same care. Python runs its SIGINT handler at the first bytecode of the next
Python code to run, which during a long C call is the entry of a callback, before any ``try``
can catch the KeyboardInterrupt. For the duration of the call the guard therefore replaces the
default handler (main thread only) by one that records the interrupt; callbacks see it through
:attr:`CallbackGuard.stopping`, and the guard raises KeyboardInterrupt after the call.
"""

import signal
import threading

from ._lib import SaeError


class CallbackGuard:
    """The exception (or Ctrl-C) of the callbacks run during one C call; see the module."""

    def __init__(self):
        self.error = None
        self.interrupted = False

    @property
    def stopping(self):
        """True once a callback raised or Ctrl-C was pressed: the C call should stop."""
        return self.error is not None or self.interrupted

    def record(self, exc):
        """Keep ``exc`` (the first one) to raise after the call."""
        if self.error is None:
            self.error = exc

    def _on_sigint(self, signum, frame):
        self.interrupted = True

    def call(self, func, *args):
        """Run the C call ``func(*args)`` and return its result; raise, in this order, the
        exception a callback recorded, KeyboardInterrupt after a Ctrl-C, or the call's own
        :class:`SaeError`."""
        previous = None
        # A nested call (a callback calling back into C) finds this guard's handler installed
        # and leaves it: its interrupts reach the outermost guard.
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            previous = signal.signal(signal.SIGINT, self._on_sigint)
        failure = result = None
        try:
            result = func(*args)
        except SaeError as exc:
            failure = exc
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        # Raised outside the except clause, so that the exception keeps its own context.
        if self.error is not None:
            raise self.error
        if self.interrupted:
            raise KeyboardInterrupt
        if failure is not None:
            raise failure
        return result
