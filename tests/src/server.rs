pub fn placeholder_for_next_step() {}
