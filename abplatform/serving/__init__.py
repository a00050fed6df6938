"""The router app's parts (``abplatform.router.ABRouter`` composes them): calling a
variant's backend (:mod:`.calls`), experiment configs kept fresh by PostgreSQL
LISTEN/NOTIFY (:mod:`.configs`), input limits and error scrubbing (:mod:`.guard`),
request ids any runner can recognise (:mod:`.ids`) and Prometheus metrics
(:mod:`.metrics`). Like the router, they run on fal's CPU runners: no migrations,
embedded server, UI or torch.
"""
