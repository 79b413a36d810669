"""Application wiring: the `memledger` console command, the demo and the benchmark."""

__all__: list[str] = []
