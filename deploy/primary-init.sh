#!/bin/sh
# Run once by the postgres image when it creates the primary's data folder: let
# the replica connect for streaming replication (password-checked, like the rest).
set -e
echo "host replication all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
