"""Research: statistics, plots, exports and the metrics they compute (reads only, for
researchers and admins; de-identified where they leave the site)."""
