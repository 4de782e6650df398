"""Migration of a VM between nodes, as a job.

``options`` (what may be asked) → ``request`` (queue the job) → ``live`` (the job:
``prechecks``, ``volumes``, libvirt's migration under the ``convergence`` policy
and the ``watch``es, then ``settle``; ``links`` names a broken link) or ``cold``
for a stopped VM. ``features`` negotiates compression, parallel connections and
post-copy; ``media`` handles attached ISOs; ``peer_proof`` lets a recent migration
stand for the peer-path check.
"""
