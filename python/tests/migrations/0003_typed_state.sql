CREATE TYPE s.job_state AS ENUM ('queued', 'running', 'done');
ALTER TABLE jobs ALTER COLUMN state SET TYPE s.job_state USING state::s.job_state;
