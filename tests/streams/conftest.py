"""Hypothesis profiles for the roll-up tests.

``--hypothesis-profile=no-shrink`` reports the first failing example without shrinking it
(handy when checking that a deliberately broken core makes the suite fail, quickly).
"""

from __future__ import annotations

from hypothesis import Phase, settings

settings.register_profile("no-shrink", phases=[Phase.explicit, Phase.reuse, Phase.generate])
