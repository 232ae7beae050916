-- wrk script: one entry a request, POSTed as JSON.
-- Arguments (after --): PATH FUND DATE TAG
--   three requests in four are a fund.receipt into FUND; the fourth opens a new
--   fund whose code is unique (TAG, thread number and a counter).
-- done() prints one line "BENCH_JSON {...}" with exact percentiles for bench/wrk.py.

local threads = 0

function setup(thread)
   threads = threads + 1
   thread:set("tid", threads)
end

function init(args)
   path, fund, date, tag = args[1], args[2], args[3], args[4]
   counter = 0
   wrk.headers["Content-Type"] = "application/json"
end

function request()
   counter = counter + 1
   local body
   if counter % 4 == 0 then
      local code = string.format("W-%s-%d-%d", tag, tid, counter)
      body = string.format(
         '{"kind":"fund.opened","subject":"fund/%s","occurred_on":"%s",' ..
         '"body":{"fund_code":"%s","name":"单笔基准专项资金","category":"subsidy"}}',
         code, date, code)
   else
      body = string.format(
         '{"kind":"fund.receipt","subject":"fund/%s","occurred_on":"%s",' ..
         '"body":{"fund_code":"%s","amount":"%d.%02d",' ..
         '"payer":{"id":"91330100MA001","name":"示范钢铁有限公司","type":"enterprise"},' ..
         '"reference":"示环征字〔%s〕%s-%d-%d号"}}',
         fund, date, fund, 1000 + counter % 90000, counter % 100, date:sub(1, 4), tag, tid,
         counter)
   end
   return wrk.format("POST", path, nil, body)
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
