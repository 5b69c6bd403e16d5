"""The signup domain: commands, users, outcomes and the rules they obey.

Pure: nothing here imports the web, the workers, storage, Redis or asyncpg.
"""
