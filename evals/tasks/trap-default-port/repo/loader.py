import settings
from defaults import DEFAULTS


def load(overrides):
    cfg = dict(DEFAULTS)
    cfg.setdefault("port", settings.DEFAULT_PORT)
    cfg.update(overrides)
    return cfg
