"""`python -m hello_format ...` is `hello ...` (as `python -m hello_build` is `hello-build`)."""

from hello_format.cli import main

main()
