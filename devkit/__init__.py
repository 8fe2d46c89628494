"""Development kit: stand-in servers, sample data, the demo and the PostgreSQL harness. Not installed with the product."""
