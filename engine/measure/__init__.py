"""Measurement: fidelity (:mod:`.fidelity`), appeal (:mod:`.appeal`), FLOP counts
(:mod:`.flops`), evaluation of protected folders (:mod:`.evaluate`) and contact sheets
(:mod:`.contact_sheet`)."""
