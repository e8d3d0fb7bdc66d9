"""hello_build: distil an image folder and a teacher into a ``.hello`` bundle (the HeLlO method)."""
