"""Settings split: base (shared), local (demo), production (deployment), test (suite)."""
