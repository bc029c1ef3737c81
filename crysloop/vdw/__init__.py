"""Van der Waals heterostructures: III-VI monolayers, their bilayers, MLIP + D3 relaxation and dataset labels."""
