"""Zéro Logement Vacant: ``users.kind`` kept equal to what Portail DF says about each user."""
