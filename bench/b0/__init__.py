"""B0 and B1: the Channels tutorial chat (part 3), verbatim, as its own tiny Django project.

B0 runs it on `RedisChannelLayer` with default settings, B1 on `RedisPubSubChannelLayer`
(`BENCH_LAYER=core|pubsub`); the Redis address comes from `BENCH_REDIS_PORT`.
"""
