"""The docker-compose exchange's one-shot set-up (``setup.sh``, run by the ``pcfx-setup``
service of ``docker-compose.yml``)."""
