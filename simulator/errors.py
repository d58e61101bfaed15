"""The one exception type of the simulator: a XenAPI error as xapi reports it."""


class XapiError(Exception):
    """A XenAPI failure: ``code`` (e.g. ``SR_BACKEND_FAILURE_46``) and ``params``
    (a list of strings), exactly what ``ErrorDescription`` carries on the wire."""

    def __init__(self, code, params=()):
        self.code = str(code)
        self.params = ["" if p is None else str(p) for p in params]
        super().__init__(self.code, *self.params)

    @property
    def description(self):
        """The wire form: ``[code, param, ...]``."""
        return [self.code] + self.params

    def __str__(self):
        return "%s(%s)" % (self.code, ", ".join(self.params))
