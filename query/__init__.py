"""The query layer: the questions users ask of the derived tables, answered with parameterised SQL.

Used by `jobprov query …` and (later) the HTTP API. Values never go into SQL text: they are query
parameters; the only spliced names are the database (a checked identifier) and fixed column names.
"""
