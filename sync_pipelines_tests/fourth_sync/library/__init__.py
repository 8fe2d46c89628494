"""The school library's patrons (a SQLite table), kept equal to the students table: a sync's domain folder, as a
new sync is written (README, "Adding a sync")."""
