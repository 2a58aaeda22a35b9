"""The text and test corpora beside the speech side: the mini-FLEURS / CoVoST /
WikiMatrix synthesizer (``corpora.synth``) and the WikiMatrix bitext filter
(``corpora.bitext``). Beam-free; the bitext job wires the filter."""
