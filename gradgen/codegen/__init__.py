"""From IR graphs to Python source: naming, printing, scheduling, templates."""
