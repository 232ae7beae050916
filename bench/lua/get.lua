-- wrk script: GET a path; "{i}" in it becomes a random integer in [0, N).
-- Arguments (after --): PATH N
-- done() prints one line "BENCH_JSON {...}" with exact percentiles for bench/wrk.py.

local threads = 0

function setup(thread)
   threads = threads + 1
   thread:set("tid", threads)
end

function init(args)
   template, n = args[1], tonumber(args[2] or "1")
   math.randomseed(os.time() * 100 + tid)
end

function request()
   local path = template:gsub("{i}", tostring(math.random(0, n - 1)))
   return wrk.format("GET", path)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"non2xx":%d,"connect_errors":%d,' ..
      '"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,' ..
      '"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
      summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean))
end
