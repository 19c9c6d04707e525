"""Every ``pcfx`` command group, one module each; :mod:`pcfx.cli` puts them together.

A command module parses options, calls the packages below (``producers``, ``streams``,
``gateway``, ``infra``, ``contracts``) and prints their typed results; the domain logic lives
in those packages, which never import ``pcfx``.
"""
