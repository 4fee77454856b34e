"""The preset configs. pyproject.toml installs this folder as the package ``streamseg.presets``, so the
presets travel with every install and are read with ``importlib.resources``; an editable install
finds the package only through this file."""
