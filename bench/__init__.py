"""The benchmark: ``python -m bench`` (full) or ``python -m bench --smoke`` (seconds).

The service against a plain single-process implementation of the seed's design
(``bench/baseline.py``), over HTTP with wrk (``bench/wrk/*.lua``). Not part of the service.
"""
