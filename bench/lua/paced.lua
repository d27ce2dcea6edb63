-- Each connection waits 500 ms after every answer before its next request, so that both
-- systems see about the same offered load (5,000 connections: at most 10,000 requests/s)
-- and their tails are compared at equal pressure rather than at each one's own peak rate.
delay = function()
   return 500
end
