What is 2+2?j
