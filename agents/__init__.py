"""faust-streaming agents: one Faust app (= consumer group) per pipeline stage.

The agents are thin: they decode and validate input, call the domain functions in
``streams``, send results downstream and dead-letter what they cannot use.
"""
