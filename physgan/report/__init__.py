"""Report building blocks shared by ``physgan evaluate`` and the quickstart."""
