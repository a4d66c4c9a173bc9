"""The adapter contract, the same cases for Django, Flask, FastAPI and Starlette over real HTTP."""
