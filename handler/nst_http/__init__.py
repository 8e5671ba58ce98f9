"""The HTTP contract of ``POST /predictions/nst``, free of TorchServe: the request parameters and
their parsing (:mod:`.params`), the request body and its images (:mod:`.request`), the response
body and the stream events (:mod:`.response`), error bodies (:mod:`.errors`) and the KServe
envelopes (:mod:`.kserve`). The JSON shapes are defined here and nowhere else; ``docs/api.md``
and ``docs/openapi.yaml`` document them and the tests hold the three equal.
"""
