"""The harness: config -> objects -> stages -> metrics, claims and one result record. It knows no task."""
