"""The paper's experiments E1..E11 as functions of a scale preset (see :mod:`.common`)."""
