from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("agentdeck")
except PackageNotFoundError:  # run from a checkout (uv's `package = false`): read pyproject
    import tomllib
    from pathlib import Path

    _pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    VERSION = tomllib.loads(_pyproject.read_text())["project"]["version"]
