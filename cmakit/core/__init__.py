"""Pure math on arrays (numpy/torch only): the CMA loss, OoD scores and their registry, OoD
metrics, embedding geometry, negative-label mining and input checks. No I/O, no devices."""
