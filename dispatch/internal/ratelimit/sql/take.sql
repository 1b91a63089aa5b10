SELECT granted, current_rate FROM herald_take_tokens($1, $2, $3)
