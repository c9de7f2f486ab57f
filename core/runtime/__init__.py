"""The MetaGPT runtime: the only package that imports metagpt.

Import `core.runtime.bootstrap` and call `configure_metagpt(data_dir)` before anything else here:
MetaGPT reads its root, config and log locations at import time.
"""
