"""Tests of the PenguinMails engine."""
