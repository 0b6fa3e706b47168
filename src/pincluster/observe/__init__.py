"""Observability: Prometheus metrics (``metrics``), the one-screen health view (``stats``) and the hooks that
feed them (``hooks``)."""
