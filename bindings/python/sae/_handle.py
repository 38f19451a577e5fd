"""NativeHandle: what every wrapper of a libsae handle shares."""


class NativeHandle:
    """Mixin for a Python object that owns native libsae resources.

    A subclass defines _release(), which frees whatever it still holds and tolerates a
    constructor that failed half way (attributes missing). Then close() (overridable, e.g. to
    refuse while the handle is busy), `with` blocks and garbage collection all free the
    resources, and pickling or copying is refused: two Python objects must never free one
    handle. _copy_hint, if set, is appended to that error (what to do instead)."""

    _copy_hint = ""

    def _release(self):
        raise NotImplementedError

    def close(self):
        """Release the native resources. Further use raises ValueError."""
        self._release()

    def __del__(self):
        try:
            self._release()
        except Exception:  # interpreter shutdown (the library may be gone), or a failed __init__
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __reduce__(self):
        raise TypeError("a sae.%s cannot be pickled or copied%s"
                        % (type(self).__name__, self._copy_hint))
