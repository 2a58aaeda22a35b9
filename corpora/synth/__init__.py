"""mini-FLEURS synthesis: UDHR text + espeak-ng speech in the FLEURS, Common Voice +
CoVoST 2 and WikiMatrix layouts (``speechtok corpus synth``).

Modules: :mod:`.udhr` (text), :mod:`.espeak` (speech), :mod:`.plan` (splits,
selection, voices), :mod:`.render` (one recording), :mod:`.pool` (crash-isolated
workers), :mod:`.layouts` (writers), :mod:`.synth` (config and orchestration),
:mod:`.summary` (end-of-run table), :mod:`.cli`.
"""
