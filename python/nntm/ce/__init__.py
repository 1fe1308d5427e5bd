"""Core experiments: a test cfg against an anchor cfg over the CTC models.

:mod:`nntm.ce.models` holds one adapter per CTC model (read the original
tensors, measure the fidelity of a reconstructed copy on real inputs).  The
harness that sweeps QPs and computes BD-rates builds on them.  Everything here
that runs a network needs the optional CE dependencies (``scripts/install_ce.sh``);
the codec itself does not.
"""
