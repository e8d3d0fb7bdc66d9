"""`python -m hello_build ...` is `hello-build ...` (e.g. under `torchrun ... -m hello_build`)."""

from hello_build.cli import main

main()
