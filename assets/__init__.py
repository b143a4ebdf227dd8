"""The offline demo bundle: the shipped model (``tiny-clip/``) and collection (``shapes/``), and ``assets.bundle``,
the package that builds them. Being a package lets tests and benchmarks ``import assets.bundle``; the data folders
beside it are plain files, loaded by path."""
