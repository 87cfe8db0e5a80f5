"""Test helpers: local servers and data builders shared by the test suite."""
