"""Files in and out: discover inputs (:mod:`.discover`), load any image format (:mod:`.load`),
pixel conversion and JPEG (:mod:`.jpeg`), write outputs atomically with a metadata policy
(:mod:`.write`), report rows (:mod:`.report`) and strict JSON (:mod:`.strict_json`)."""
