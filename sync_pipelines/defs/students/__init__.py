"""The student information system's ``students`` table: read, validated, and offered to the RT sync."""
