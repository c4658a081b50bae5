"""Tests of the returnn-native plugin."""
