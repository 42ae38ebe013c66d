"""The documents a tuned model ships with: the tune report (``report.json`` / ``report.md``) and the regression
manifest (``manifest.json``). Pure pydantic, no TensorFlow: below tune, regress and the CLI, which all read them."""
